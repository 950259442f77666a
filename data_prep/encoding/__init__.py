"""Step 2, events: the canonical :class:`~data_prep.encoding.table.EventTable` (table), dictionary codes, drop
accounting, sort and de-duplication (encode), and the order of the events of one instant (ties)."""
