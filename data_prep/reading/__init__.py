"""Step 1, reading: event logs -> one canonical EventTable (:func:`data_prep.reading.events.load_events`).

The CSV / TSV / JSONL readers and format detection (readers), Parquet (parquet), many files, globs and
object-store URIs (sources), the Foursquare TSMC2014 importer (foursquare), the text rules for labels, places
and user ids (labels), and timestamps: the timezone rule (timestamps), formats (time_formats) and whole-file
rules (time_rules). The rules themselves are documented in :mod:`data_prep.reading.events`.
"""
