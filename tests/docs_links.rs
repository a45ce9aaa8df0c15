//! The README and the pages under `docs/` stay readable and whole: the README
//! is short enough for a newcomer, every relative link or image points at a
//! file that exists, and no page cites the project's issue numbers (a reader
//! outside the tracker cannot follow them).

use std::path::{Path, PathBuf};

use scoreflow::checkout;

const README_MAX_LINES: usize = 400;

/// README.md and every `.md` file under `docs/`, recursively, sorted.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![checkout("README.md")];
    walk(&checkout("docs"), &mut files);
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(checkout("")).unwrap_or(path).display().to_string()
}

/// `line` with its inline code spans (`` `…` ``) blanked out, so that code
/// such as `a[i](x)` is not read as a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => rest = &after[end + ticks..],
            // An unclosed span is literal text.
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every `(line number, target)` of a markdown link or image (`[text](target)`
/// or `![alt](target)`) outside fenced code blocks and inline code.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(close) = after.find(')') else { break };
            let inner = after[..close].trim();
            // `(path "title")` and `(<path with spaces>)` are both markdown.
            let target = match inner.strip_prefix('<') {
                Some(bracketed) => bracketed.split('>').next().unwrap_or(""),
                None => inner.split_whitespace().next().unwrap_or(""),
            };
            targets.push((i + 1, target.to_string()));
            rest = &after[close + 1..];
        }
    }
    targets
}

fn is_relative(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:"))
}

/// Every `(line number, excerpt)` where `issue` or `issues` (any case, as a
/// word) is followed by whitespace and/or `#` and then a digit.
fn issue_numbers(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        let bytes = lower.as_bytes();
        let mut from = 0;
        while let Some(pos) = lower[from..].find("issue") {
            let start = from + pos;
            from = start + "issue".len();
            if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
                continue;
            }
            let mut j = from;
            if bytes.get(j) == Some(&b's') {
                j += 1;
            }
            let word_end = j;
            while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
                j += 1;
            }
            if bytes.get(j) == Some(&b'#') {
                j += 1;
            }
            if j > word_end && bytes.get(j).is_some_and(u8::is_ascii_digit) {
                let end = (j + 8).min(line.len());
                let end = (end..=line.len()).find(|&e| line.is_char_boundary(e)).unwrap_or(line.len());
                found.push((i + 1, line[start..end].to_string()));
            }
        }
        // "issue" at the end of a line followed by a number on the next one.
        if lower.trim_end().ends_with("issue") || lower.trim_end().ends_with("issues") {
            let next = text.lines().nth(i + 1).unwrap_or("").trim_start();
            let next = next.strip_prefix('#').unwrap_or(next);
            if next.starts_with(|c: char| c.is_ascii_digit()) {
                found.push((i + 1, format!("{} / {}", line.trim(), next)));
            }
        }
    }
    found
}

#[test]
fn the_readme_is_at_most_400_lines() {
    let lines = read(&checkout("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move long write-ups to docs/ and link them"
    );
}

#[test]
fn every_relative_link_and_image_in_the_docs_exists() {
    let files = markdown_files();
    assert!(files.len() > 1, "no markdown under docs/: {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let folder = file.parent().expect("a file has a folder");
        for (line, target) in link_targets(&read(file)) {
            if !is_relative(&target) {
                continue;
            }
            let path = target.split('#').next().unwrap_or("");
            if path.is_empty() {
                continue;
            }
            checked += 1;
            if !folder.join(path).exists() {
                broken.push(format!(
                    "{}:{line}: `{target}` ({} does not exist)",
                    shown(file),
                    shown(&folder.join(path))
                ));
            }
        }
    }
    assert!(checked > 0, "found no relative links at all: is the link scanner broken?");
    assert!(broken.is_empty(), "{} broken link(s):\n{}", broken.len(), broken.join("\n"));
}

#[test]
fn no_page_cites_an_issue_number() {
    let mut found = Vec::new();
    for file in markdown_files() {
        for (line, excerpt) in issue_numbers(&read(&file)) {
            found.push(format!("{}:{line}: {excerpt}", shown(&file)));
        }
    }
    assert!(found.is_empty(), "issue numbers in the docs (rephrase without them):\n{}", found.join("\n"));
}

#[test]
fn the_scanners_find_what_they_should() {
    let text = "see [a](docs/a.md#x) and ![img](../b.png \"t\") and [web](https://x.y) [in](#here)\n\
                `[not](code.md)` [c](<d e.md>)\n```\n[fenced](no.md)\n```\n";
    let targets: Vec<String> = link_targets(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["docs/a.md#x", "../b.png", "https://x.y", "#here", "d e.md"]);
    let relative: Vec<&String> = targets.iter().filter(|t| is_relative(t)).collect();
    assert_eq!(relative, ["docs/a.md#x", "../b.png", "d e.md"]);

    let text = "Issue 16 and (issues  3) and issue #4\nissue\n12\ntissue 5, issue number 6, the issue's bounds, issues";
    let lines: Vec<usize> = issue_numbers(text).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, [1, 1, 1, 2]);
}
