"""scoreflow's Python helper: write a command stage in a few lines, and load
any cached artifact into a DataFrame from a notebook.

Inside a command stage (a stage with ``run:`` in a pipeline)::

    import scoreflow
    s = scoreflow.stage()
    n = s.params["draws"]
    data = s.read_table("data")          # polars / pandas / pyarrow, else a dict of columns
    s.progress(0.5)
    s.write_table("samples", frame)      # a DataFrame, a pyarrow Table, or a dict of columns
    s.metrics({"mse": 0.12})             # shows in `scoreflow compare`

From a notebook::

    df = scoreflow.load("pipelines/two_moons.yaml", "samples.samples")
    net = scoreflow.torch_model("eps.safetensors")   # after `scoreflow export ddpm.model -o eps.safetensors`

The core is the Python standard library alone. polars, pandas or pyarrow are
used when installed (in that order of preference); without any of them tables
travel as CSV, converted by the ``scoreflow`` binary itself.

The protocol this follows is the README's "Command stages" section: the stage's
values come from the JSON file named by ``SCOREFLOW_STAGE``; outputs are files
``NAME.<ext>`` in the stage's output folder.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

__all__ = ["Stage", "stage", "load", "torch_model", "PROTOCOL"]

#: The protocol version this helper speaks (the stage file's ``protocol``).
PROTOCOL = 1


def _library():
    """The first table library installed: "polars", "pandas", "pyarrow" or None."""
    for name in ("polars", "pandas", "pyarrow"):
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    return None


def _binary():
    exe = os.environ.get("SCOREFLOW_BIN") or shutil.which("scoreflow")
    if not exe:
        raise RuntimeError(
            "no table library (polars, pandas, pyarrow) and no scoreflow binary "
            "(SCOREFLOW_BIN or scoreflow on PATH) to convert Parquet with"
        )
    return exe


def _number(text):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _read_csv_columns(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    cols = {h: [] for h in header}
    for row in body:
        for h, v in zip(header, row):
            cols[h].append(_number(v))
    # "true"/"false" columns are booleans.
    for h, v in cols.items():
        if v and all(x in ("true", "false") for x in v):
            cols[h] = [x == "true" for x in v]
    return cols


def read_parquet(path, library=None):
    """A Parquet file as a DataFrame of the first library installed, else a
    dict of columns (through ``scoreflow export``)."""
    library = library or _library()
    if library == "polars":
        import polars

        return polars.read_parquet(path)
    if library == "pandas":
        import pandas

        return pandas.read_parquet(path)
    if library == "pyarrow":
        import pyarrow.parquet

        return pyarrow.parquet.read_table(path)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "table.csv")
        subprocess.run([_binary(), "export", path, "-o", out], check=True, stdout=subprocess.DEVNULL)
        return _read_csv_columns(out)


def _columns_of(table):
    """A dict of columns, or a list of row dicts, as a dict of columns."""
    if isinstance(table, dict):
        return {str(k): list(v) for k, v in table.items()}
    if isinstance(table, list) and (not table or isinstance(table[0], dict)):
        names = list(table[0].keys()) if table else []
        return {n: [row[n] for row in table] for n in names}
    raise TypeError(
        "write_table takes a polars or pandas DataFrame, a pyarrow Table, a dict "
        "of columns or a list of row dicts, not %s" % type(table).__name__
    )


def _cell(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # shortest text that reads back as the same float
    return str(v)


def write_table(path_without_ext, table):
    """Write ``table`` as ``<path>.parquet`` (a DataFrame or pyarrow Table) or
    ``<path>.csv`` (a dict of columns or a list of row dicts); returns the path."""
    mod = type(table).__module__.split(".")[0]
    if mod == "polars":
        path = path_without_ext + ".parquet"
        table.write_parquet(path)
        return path
    if mod == "pandas":
        path = path_without_ext + ".parquet"
        try:
            table.to_parquet(path, index=False)
        except ImportError:  # pandas without pyarrow or fastparquet
            path = path_without_ext + ".csv"
            table.to_csv(path, index=False)
        return path
    if mod == "pyarrow":
        import pyarrow.parquet

        path = path_without_ext + ".parquet"
        pyarrow.parquet.write_table(table, path)
        return path
    cols = _columns_of(table)
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError("columns of different lengths: %s" % {k: len(v) for k, v in cols.items()})
    path = path_without_ext + ".csv"
    names = list(cols)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for row in zip(*(cols[n] for n in names)):
            w.writerow([_cell(v) for v in row])
    return path


class Stage:
    """One run of a command stage, read from the stage file."""

    def __init__(self, path=None):
        path = path or os.environ.get("SCOREFLOW_STAGE")
        if not path:
            raise RuntimeError("SCOREFLOW_STAGE is not set: run this script as a scoreflow command stage")
        with open(path) as f:
            self._info = json.load(f)
        if self._info.get("protocol") != PROTOCOL:
            raise RuntimeError(
                "this helper speaks protocol %d, the stage file says %r" % (PROTOCOL, self._info.get("protocol"))
            )

    name = property(lambda self: self._info["stage"], doc="the stage's name in its pipeline")
    pipeline = property(lambda self: self._info["pipeline"], doc="the pipeline's name")
    kind = property(lambda self: self._info["kind"], doc="generate, label, train, sample, validate, tune or report")
    key = property(lambda self: self._info["key"], doc="the stage key (hex)")
    seed = property(lambda self: self._info["seed"], doc="the stage's seed")
    params = property(lambda self: self._info["params"], doc="the stage's params, as typed in the YAML")
    threads = property(lambda self: self._info["threads"], doc="how many threads the stage may use")
    output_dir = property(lambda self: self._info["output_dir"], doc="where outputs are written")

    def input_path(self, name):
        """The absolute path of input ``name`` (read-only)."""
        try:
            return self._info["inputs"][name]
        except KeyError:
            raise KeyError("no input %r; the stage has %s" % (name, sorted(self._info["inputs"]))) from None

    def output_path(self, name, ext=None):
        """Where output ``name`` goes: ``NAME.<ext>`` in the output folder
        (the declared media's extension when ``ext`` is None)."""
        try:
            default = self._info["outputs"][name]["path"]
        except KeyError:
            raise KeyError("no output %r; the stage declares %s" % (name, sorted(self._info["outputs"]))) from None
        if ext is None:
            return default
        return os.path.join(self.output_dir, "%s.%s" % (name, ext.lstrip(".")))

    def read_table(self, name):
        """Input ``name`` as a DataFrame (polars, else pandas, else pyarrow), or
        a dict of columns where none is installed."""
        return read_parquet(self.input_path(name))

    def write_table(self, name, table):
        """Write output ``name``; see :func:`write_table` for what ``table`` may be."""
        if name not in self._info["outputs"]:
            raise KeyError("no output %r; the stage declares %s" % (name, sorted(self._info["outputs"])))
        return write_table(os.path.join(self.output_dir, name), table)

    def metrics(self, values, name="metrics"):
        """Write ``{metric: number}`` as the table ``metrics`` (columns metric,
        value), which ``scoreflow compare`` shows."""
        return self.write_table(name, {"metric": list(values), "value": [float(v) for v in values.values()]})

    @staticmethod
    def progress(fraction):
        """Move the stage's progress bar to ``fraction`` (0 to 1)."""
        sys.stdout.write("scoreflow:progress %.4f\n" % float(fraction))
        sys.stdout.flush()


def torch_model(path, ema=False):
    """A model exported with ``scoreflow export … -o m.safetensors`` as a
    ``torch.nn.Module`` (needs torch); see :mod:`scoreflow.torch_models`."""
    from .torch_models import load as _load

    return _load(path, ema=ema)


def stage(path=None):
    """The running command stage (read from ``SCOREFLOW_STAGE``)."""
    return Stage(path)


def load(spec, target, artifacts=None, library=None):
    """A cached output of a pipeline as a DataFrame (or a dict of columns):
    ``load("pipelines/two_moons.yaml", "samples.samples")``. The stage must be
    fresh (run the pipeline first)."""
    exe = os.environ.get("SCOREFLOW_BIN") or shutil.which("scoreflow")
    if not exe:
        raise RuntimeError("the scoreflow binary is not on PATH (cargo install --path . or set SCOREFLOW_BIN)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "table.parquet")
        cmd = [exe, "export", target, "--pipeline", spec, "-o", out]
        if artifacts:
            cmd += ["--artifacts", artifacts]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        table = read_parquet(out, library)
        if isinstance(table, dict):
            return table
        if type(table).__module__.split(".")[0] == "polars":
            return table  # polars reads eagerly: the file may go
        if type(table).__module__.split(".")[0] == "pyarrow":
            return table
        return table.copy()
