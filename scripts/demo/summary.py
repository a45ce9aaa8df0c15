"""A report page from two metrics tables, standard library only."""
import html

from _helper import scoreflow

s = scoreflow.stage()
parts = ["<!doctype html><meta charset=utf-8><title>command demo</title><h1>command demo</h1>"]
for name in ("pi", "distances"):
    t = s.read_table(name)
    if not isinstance(t, dict):
        t = {c: list(t[c]) for c in t.columns}
    parts.append("<h2>%s</h2><table>" % html.escape(name))
    for metric, value in zip(t["metric"], t["value"]):
        parts.append("<tr><td>%s</td><td>%.6g</td></tr>" % (html.escape(str(metric)), value))
    parts.append("</table>")
with open(s.output_path("page"), "w") as f:
    f.write("\n".join(parts) + "\n")
