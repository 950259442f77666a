"""Next-behavior predictions from a trained run: batch files (`python -m serving predict`) and an HTTP
service (`python -m serving serve`); see serving/__main__.py."""
