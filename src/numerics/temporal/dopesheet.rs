//! Reading a dopesheet (spec §1).
//!
//! * Columns: `STEP`, `PHASE`, `ACTION` are required; every other column is a
//!   property, in header order. A property header is `name[:space[:timing]]`:
//!   space `log` (values interpolated as `ln max(v, 10⁻¹⁰)`) or empty/`linear`;
//!   timing `minjerk` (the default when empty), `linear`, `step` or `step-end`.
//! * Cells: blank or a pandas NA token (`NA`, `NaN`, `null`, …) is "not keyed";
//!   anything else must be a finite number.
//! * `STEP`, per row in file order: an **anchor** is unsigned ASCII digits
//!   (`007` is 7); `+N` / `-N` (`N` without a leading zero) is the nearest anchor
//!   above plus `N` / the nearest anchor below minus `N`; `+F` / `-F` with
//!   `0 < F < 1` written `[digits].digits` is `round(prev + F·(next − prev))` /
//!   `round(next − F·(next − prev))` between the two anchors around the row
//!   (round half to even). Only anchors are references, so nothing chains; a
//!   step below 0 becomes 0. Rows are then ordered by step (stable).
//! * Stricter than the origin: a malformed STEP (`+0`, `+05`, `+1.0`, `1.5`,
//!   blank, a relative row without its anchor), anchors that decrease down the
//!   sheet, an unparsable value, an unknown space or timing, a duplicated
//!   property or a missing required column is an error naming its line and
//!   column — every one at once.

use std::fmt;

/// How a property's values are interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Linear,
    /// Interpolate `ln max(v, 10⁻¹⁰)`, read back through `exp`.
    Log,
}

/// The curve between two keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// `y₀ + Δ·(10τ³ − 15τ⁴ + 6τ⁵)`: zero velocity and acceleration at both keys.
    MinJerk,
    Linear,
    /// `y₀` until the next key's step, then `y₁` (`step-end`).
    Step,
}

/// One property column.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// The base name (`lr`, `reg-separate`).
    pub name: String,
    /// The header as written (`lr:log:linear`).
    pub header: String,
    pub space: Space,
    pub timing: Timing,
}

/// One row of the sheet, its step resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line in the file (the header is line 1).
    pub line: usize,
    pub step: usize,
    /// `PHASE`, when not blank.
    pub phase: Option<String>,
    /// `ACTION`, when not blank (comma-separated names, kept as written).
    pub action: Option<String>,
    /// One cell per property: `None` is "not keyed".
    pub values: Vec<Option<f64>>,
}

/// A parsed dopesheet: its properties and its rows ordered by step.
#[derive(Debug, Clone, PartialEq)]
pub struct Dopesheet {
    pub properties: Vec<Property>,
    pub rows: Vec<Row>,
}

impl Dopesheet {
    /// The number of steps the sheet lasts: the largest step + 1.
    pub fn len(&self) -> usize {
        self.rows.iter().map(|r| r.step).max().map_or(0, |m| m + 1)
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// The index of the property named `name`.
    pub fn property(&self, name: &str) -> Option<usize> {
        self.properties.iter().position(|p| p.name == name)
    }
    /// Property `p`'s keyframes: (step, value) of every non-blank cell, in step order.
    pub fn keys(&self, p: usize) -> Vec<(usize, f64)> {
        self.rows.iter().filter_map(|r| r.values[p].map(|v| (r.step, v))).collect()
    }
}

/// A problem in a sheet, located by line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetError {
    /// 1-based line (the header is line 1).
    pub line: usize,
    pub column: String,
    pub message: String,
}

impl fmt::Display for SheetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// The last step a sheet may key: the realised timeline holds one row of
/// every property per step, so a step of 10¹² would ask for terabytes.
pub const MAX_STEP: usize = 10_000_000;

/// The 1-based character column where field `field` (0-based) of `line`
/// starts, commas inside double quotes not counting.
pub fn field_column(line: &str, field: usize) -> usize {
    let (mut seen, mut quoted) = (0, false);
    for (i, ch) in line.chars().enumerate() {
        if seen == field {
            return i + 1;
        }
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => seen += 1,
            _ => {}
        }
    }
    if seen == field { line.chars().count() + 1 } else { 1 }
}

impl SheetError {
    /// Where in `text` (the sheet) this error lies: its line, and the column
    /// where its field starts (found by the header naming it; 1 when the
    /// error names no column).
    pub fn position(&self, text: &str) -> (usize, usize) {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let field = header.split(',').position(|h| h.trim().trim_matches('"') == self.column);
        let col = match (field, text.lines().nth(self.line.saturating_sub(1))) {
            (Some(f), Some(l)) => field_column(l, f),
            _ => 1,
        };
        (self.line.max(1), col)
    }
}

/// pandas' default NA tokens: cells that mean "not keyed".
const NA_TOKENS: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
];

fn is_na(cell: &str) -> bool {
    NA_TOKENS.contains(&cell) || NA_TOKENS.contains(&cell.trim())
}

/// A STEP cell before resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StepCell {
    Anchor(usize),
    After(usize),
    Before(usize),
    FractionAfter(f64),
    FractionBefore(f64),
}

fn parse_step(cell: &str) -> Result<StepCell, String> {
    let explain = || {
        format!(
            "STEP `{cell}` is not a step: an anchor (digits), `+N` / `-N` (N ≥ 1, no leading zero) or `+F` / `-F` (0 < F < 1)"
        )
    };
    if !cell.is_empty() && cell.bytes().all(|b| b.is_ascii_digit()) {
        return cell.parse().map(StepCell::Anchor).map_err(|_| explain());
    }
    let (sign, body) = match cell.as_bytes().first() {
        Some(b'+') => (1, &cell[1..]),
        Some(b'-') => (-1, &cell[1..]),
        _ => return Err(explain()),
    };
    let bytes = body.as_bytes();
    let integer = !bytes.is_empty() && bytes[0] != b'0' && bytes.iter().all(u8::is_ascii_digit);
    if integer {
        let n: usize = body.parse().map_err(|_| explain())?;
        return Ok(if sign > 0 { StepCell::After(n) } else { StepCell::Before(n) });
    }
    // [0-9]*\.[0-9]+ with 0 < F < 1.
    let fraction = match body.split_once('.') {
        Some((a, b)) => a.bytes().all(|c| c.is_ascii_digit()) && !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()),
        None => false,
    };
    if fraction {
        let f: f64 = body.parse().map_err(|_| explain())?;
        if f > 0.0 && f < 1.0 {
            return Ok(if sign > 0 { StepCell::FractionAfter(f) } else { StepCell::FractionBefore(f) });
        }
        return Err(format!("STEP `{cell}`: a fraction must lie strictly between 0 and 1"));
    }
    Err(explain())
}

fn parse_header(header: &str) -> Result<Property, String> {
    let parts: Vec<&str> = header.split(':').collect();
    // Headers that do not have the form (3+ colons, a leading colon) are a name verbatim.
    if parts.len() > 3 || parts[0].is_empty() {
        return Ok(Property {
            name: header.to_string(),
            header: header.to_string(),
            space: Space::Linear,
            timing: Timing::MinJerk,
        });
    }
    let space = match parts.get(1).copied().unwrap_or("") {
        "" | "linear" => Space::Linear,
        "log" => Space::Log,
        other => return Err(format!("unknown space `{other}` in header `{header}` (log, linear, or empty)")),
    };
    let timing = match parts.get(2).copied().unwrap_or("") {
        "" | "minjerk" => Timing::MinJerk,
        "linear" => Timing::Linear,
        "step" | "step-end" => Timing::Step,
        other => {
            return Err(format!(
                "unknown timing `{other}` in header `{header}` (minjerk, linear, step, step-end, or empty)"
            ));
        }
    };
    Ok(Property { name: parts[0].to_string(), header: header.to_string(), space, timing })
}

/// Where the sheet's columns are: STEP, PHASE and ACTION (`None` when one
/// is missing), then each property and its column.
struct Columns {
    fixed: Option<(usize, usize, usize)>,
    properties: Vec<Property>,
    at: Vec<usize>,
}

/// Read the header row: the three required columns and every property's
/// `name:space:timing`.
fn columns(headers: &csv::StringRecord, errors: &mut Vec<SheetError>) -> Columns {
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (step_at, phase_at, action_at) = (col("STEP"), col("PHASE"), col("ACTION"));
    for (name, at) in [("STEP", step_at), ("PHASE", phase_at), ("ACTION", action_at)] {
        if at.is_none() {
            errors.push(SheetError {
                line: 1,
                column: name.into(),
                message: format!("the required column {name} is missing"),
            });
        }
    }
    let mut properties = Vec::new();
    let mut prop_cols = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        if ["STEP", "PHASE", "ACTION"].contains(&h) {
            continue;
        }
        match parse_header(h) {
            Ok(p) => {
                if properties.iter().any(|q: &Property| q.name == p.name) {
                    errors.push(SheetError {
                        line: 1,
                        column: h.into(),
                        message: format!("property `{}` appears twice", p.name),
                    });
                }
                properties.push(p);
                prop_cols.push(i);
            }
            Err(m) => errors.push(SheetError { line: 1, column: h.into(), message: m }),
        }
    }
    let fixed = match (step_at, phase_at, action_at) {
        (Some(s), Some(p), Some(a)) => Some((s, p, a)),
        _ => None,
    };
    Columns { fixed, properties, at: prop_cols }
}

/// The rows in file order: (line, the STEP cell as written, the row with
/// its values). A cell that does not parse is an error and no value.
fn raw_rows(
    reader: &mut csv::Reader<&[u8]>,
    cols: &Columns,
    (step_at, phase_at, action_at): (usize, usize, usize),
    errors: &mut Vec<SheetError>,
) -> Vec<(usize, Option<StepCell>, Row)> {
    let (properties, prop_cols) = (&cols.properties, &cols.at);
    // Raw rows, in file order.
    let mut raw: Vec<(usize, Option<StepCell>, Row)> = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errors.push(SheetError { line, column: String::new(), message: e.to_string() });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cell = |i: usize| record.get(i).unwrap_or("");
        let step = match parse_step(cell(step_at).trim()) {
            Ok(s) => Some(s),
            Err(m) => {
                errors.push(SheetError { line, column: "STEP".into(), message: m });
                None
            }
        };
        let text = |i: usize| Some(cell(i).to_string()).filter(|s| !is_na(s));
        let mut values = Vec::with_capacity(prop_cols.len());
        for (p, &c) in properties.iter().zip(prop_cols) {
            let v = cell(c);
            if is_na(v) {
                values.push(None);
                continue;
            }
            match v.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => values.push(Some(x)),
                _ => {
                    errors.push(SheetError {
                        line,
                        column: p.header.clone(),
                        message: format!("`{v}` is not a finite number (leave the cell blank for no key)"),
                    });
                    values.push(None);
                }
            }
        }
        raw.push((line, step, Row { line, step: 0, phase: text(phase_at), action: text(action_at), values }));
    }

    raw
}

/// Each row's step: anchors as written (never decreasing down the sheet),
/// relative and fractional steps from the anchors around them.
fn place_rows(raw: Vec<(usize, Option<StepCell>, Row)>, errors: &mut Vec<SheetError>) -> Vec<Row> {
    // Anchors must not decrease down the sheet.
    let anchors: Vec<(usize, usize)> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, (_, s, _))| match s {
            Some(StepCell::Anchor(a)) => Some((i, *a)),
            _ => None,
        })
        .collect();
    for w in anchors.windows(2) {
        if w[1].1 < w[0].1 {
            errors.push(SheetError {
                line: raw[w[1].0].0,
                column: "STEP".into(),
                message: format!(
                    "anchor {} comes after anchor {}: anchors must not decrease down the sheet",
                    w[1].1, w[0].1
                ),
            });
        }
    }
    let prev_anchor = |i: usize| anchors.iter().rev().find(|(j, _)| *j < i).map(|a| a.1);
    let next_anchor = |i: usize| anchors.iter().find(|(j, _)| *j > i).map(|a| a.1);
    let mut rows = Vec::with_capacity(raw.len());
    for (i, (line, cell, mut row)) in raw.into_iter().enumerate() {
        let Some(cell) = cell else { continue };
        let missing = |message: &str| SheetError { line, column: "STEP".into(), message: message.into() };
        let step = match cell {
            StepCell::Anchor(a) => Ok(a as f64),
            StepCell::After(n) => prev_anchor(i)
                .map(|a| a as f64 + n as f64)
                .ok_or_else(|| missing("a relative step needs an anchor above it, and there is none")),
            StepCell::Before(n) => next_anchor(i)
                .map(|a| a as f64 - n as f64)
                .ok_or_else(|| missing("a relative step needs an anchor below it, and there is none")),
            StepCell::FractionAfter(f) | StepCell::FractionBefore(f) => match (prev_anchor(i), next_anchor(i)) {
                (Some(a), Some(b)) => {
                    let (a, b) = (a as f64, b as f64);
                    let at = if matches!(cell, StepCell::FractionAfter(_)) { a + f * (b - a) } else { b - f * (b - a) };
                    Ok(at.round_ties_even())
                }
                _ => Err(missing("a fractional step needs an anchor above and below it")),
            },
        };
        match step {
            Ok(s) if s > MAX_STEP as f64 => errors.push(SheetError {
                line,
                column: "STEP".into(),
                message: format!(
                    "step {s} is past the last step a sheet may have ({MAX_STEP}): the timeline holds a row for every step"
                ),
            }),
            Ok(s) => {
                row.step = s.max(0.0) as usize;
                rows.push(row);
            }
            Err(e) => errors.push(e),
        }
    }
    rows
}

/// Parse a dopesheet; every problem is reported at once.
pub fn parse(text: &str) -> Result<Dopesheet, Vec<SheetError>> {
    let mut errors = Vec::new();
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![SheetError { line: 1, column: String::new(), message: e.to_string() }]),
    };
    let cols = columns(&headers, &mut errors);
    let Some(fixed) = cols.fixed else {
        return Err(errors);
    };
    let raw = raw_rows(&mut reader, &cols, fixed, &mut errors);
    let mut rows = place_rows(raw, &mut errors);
    if rows.is_empty() && errors.is_empty() {
        errors.push(SheetError { line: 2, column: "STEP".into(), message: "the sheet has no rows".into() });
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(errors);
    }
    rows.sort_by_key(|r| r.step);
    Ok(Dopesheet { properties: cols.properties, rows })
}
