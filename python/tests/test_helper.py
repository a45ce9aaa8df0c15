"""The helper's own tests, standard library only: run by `cargo test` (the
`python_helper` test in tests/command.rs) with `python3 -m unittest`."""
import csv
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import scoreflow  # noqa: E402


def stage_file(tmp, **extra):
    out = os.path.join(tmp, "out")
    os.makedirs(out, exist_ok=True)
    info = {
        "protocol": scoreflow.PROTOCOL,
        "stage": "s",
        "pipeline": "p",
        "kind": "generate",
        "key": "ab" * 32,
        "seed": 7,
        "params": {"n": 3, "lr": 0.5, "name": "x"},
        "inputs": {"data": os.path.join(tmp, "in.parquet")},
        "outputs": {
            "t": {"media": "table", "path": os.path.join(out, "t.parquet")},
            "metrics": {"media": "table", "path": os.path.join(out, "metrics.parquet")},
        },
        "output_dir": out,
        "workdir": tmp,
        "threads": 2,
    }
    info.update(extra)
    path = os.path.join(tmp, "stage.json")
    with open(path, "w") as f:
        json.dump(info, f)
    return path


class HelperTest(unittest.TestCase):
    def test_the_stage_file_gives_params_seed_and_paths(self):
        with tempfile.TemporaryDirectory() as tmp:
            s = scoreflow.stage(stage_file(tmp))
            self.assertEqual((s.seed, s.params["n"], s.params["lr"], s.threads), (7, 3, 0.5, 2))
            self.assertEqual(s.input_path("data"), os.path.join(tmp, "in.parquet"))
            self.assertEqual(s.output_path("t", "csv"), os.path.join(tmp, "out", "t.csv"))
            with self.assertRaisesRegex(KeyError, "no input 'nope'"):
                s.input_path("nope")
            with self.assertRaisesRegex(KeyError, "no output 'nope'"):
                s.write_table("nope", {"a": [1]})

    def test_a_stage_file_of_another_protocol_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(RuntimeError, "protocol"):
                scoreflow.stage(stage_file(tmp, protocol=99))

    def test_without_a_stage_file_the_error_says_how_to_run(self):
        old = os.environ.pop("SCOREFLOW_STAGE", None)
        try:
            with self.assertRaisesRegex(RuntimeError, "command stage"):
                scoreflow.stage()
        finally:
            if old is not None:
                os.environ["SCOREFLOW_STAGE"] = old

    def test_columns_are_written_as_csv_that_reads_back_exactly(self):
        with tempfile.TemporaryDirectory() as tmp:
            s = scoreflow.stage(stage_file(tmp))
            xs = [0.1, 1.0 / 3.0, -2.5e-300, 1e300]
            path = s.write_table("t", {"x": xs, "k": [1, 2, 3, 4], "b": [True, False, True, True]})
            self.assertTrue(path.endswith("t.csv"))
            back = scoreflow._read_csv_columns(path)
            self.assertEqual(back["x"], xs)
            self.assertEqual(back["k"], [1, 2, 3, 4])
            self.assertEqual(back["b"], [True, False, True, True])
            rows = [{"a": 1, "b": "u"}, {"a": 2, "b": "v"}]
            back = scoreflow._read_csv_columns(s.write_table("t", rows))
            self.assertEqual(back, {"a": [1, 2], "b": ["u", "v"]})
            with self.assertRaisesRegex(ValueError, "different lengths"):
                s.write_table("t", {"a": [1], "b": [1, 2]})
            with self.assertRaisesRegex(TypeError, "write_table takes"):
                s.write_table("t", 42)

    def test_metrics_are_a_metric_value_table(self):
        with tempfile.TemporaryDirectory() as tmp:
            s = scoreflow.stage(stage_file(tmp))
            path = s.metrics({"mse": 0.25, "n": 3})
            with open(path) as f:
                self.assertEqual(list(csv.reader(f)), [["metric", "value"], ["mse", "0.25"], ["n", "3.0"]])

    def test_progress_is_a_line_scoreflow_reads(self):
        buf = io.StringIO()
        with redirect_stdout(buf):
            scoreflow.Stage.progress(0.5)
        self.assertEqual(buf.getvalue(), "scoreflow:progress 0.5000\n")


if __name__ == "__main__":
    unittest.main()
