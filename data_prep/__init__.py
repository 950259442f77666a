"""BehaviorLM data preparation: behavior event logs -> samples -> prompts -> LLaMA-Factory datasets."""
