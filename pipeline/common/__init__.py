"""Helpers shared by the stages, the commands and the benchmarks: progress bars, figures,
tables, metrics files, params-file reading and the arm drawing."""
