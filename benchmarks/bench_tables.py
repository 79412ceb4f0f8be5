"""Tables into models: reading a CSV, the preprocessor's fit and transform, and a float32
model's predict on a frame.

Two shapes of numeric table, each read from a CSV that setup_cache writes once with
read_csv.py's writer: ``short`` (~30 MB: ~200,000 rows of 20 float columns with four decimals
and an integer label) and ``pixels`` (~22 MB: ~12,000 rows of 784 integer columns, mostly 0,
and a label, as the MNIST CSV export). pyarrow parses in blocks of about 1 MB, so the wide
table comes in ~20 chunks of ~600 rows: the per-column-and-block costs show there
(``benchmarks/read_csv.py`` times whole 200 MB files against numpy's loadtxt).
"""
import os

import fastbp
from fastbp import tables

from .read_csv import write_csv

SHAPES = {"short": 30, "pixels": 22}       # megabytes of each CSV


class Tables:
    params = list(SHAPES)
    param_names = ["shape"]
    timeout = 300

    def setup_cache(self):
        # asv runs setup_cache in a folder of its own, removed after the run
        paths = {shape: os.path.abspath(f"tables-{shape}.csv") for shape in SHAPES}
        for shape, path in paths.items():
            write_csv(path, SHAPES[shape], 20, shape)
        return paths

    def setup(self, paths, shape):
        self.path = paths[shape]
        self.table = tables.read_table(self.path)
        self.prep = tables.TablePreprocessor().fit(self.table, "label")
        self.model = fastbp.MLP([self.prep.n_features_out, 32, 10 if shape == "pixels" else 2], seed=0)
        self.model.preprocessor = self.prep
        self.model.predict(self.table.slice(0, 300))       # compiled and loaded before timing

    def time_read_table(self, paths, shape):
        tables.read_table(self.path)

    def time_numeric_matrix(self, paths, shape):
        tables.numeric_matrix(self.table)

    def time_preprocessor_fit(self, paths, shape):
        tables.TablePreprocessor().fit(self.table, "label")

    def time_transform(self, paths, shape):
        self.prep.transform(self.table)

    def time_predict_frame_float32(self, paths, shape):
        self.model.predict(self.table)

    def peakmem_predict_frame_float32(self, paths, shape):
        self.model.predict(self.table)
