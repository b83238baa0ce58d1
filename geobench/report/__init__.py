"""Reports over many metrics.csv files: `table` collects, sorts, renders and checks rows
against published numbers (data/paper_results.csv); `plot` draws recall@K curves."""
