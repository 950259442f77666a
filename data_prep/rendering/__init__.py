"""Step 4, render: the prompt text (prompts) and the alpaca records and meta lines of a split (render)."""
