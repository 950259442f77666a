"""Step 5, write: atomic file writers and the dataset_dir layout (outputs), and the whole-run dataset_dir built
aside and swapped in at the end (rundir). A prepared dataset_dir is read back by :mod:`data_prep.prepared`."""
