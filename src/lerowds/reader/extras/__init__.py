"""Training extras beside the data path: run statistics and the ``lerowds plan`` dry run."""
