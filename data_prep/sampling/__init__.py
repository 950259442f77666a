"""Step 3, samples: windows of L events and their next behavior, user splits, caps, the two test protocols and
the behavior frequency groups (samples), and the auxiliary conversations of A-tuning (auxiliary)."""
