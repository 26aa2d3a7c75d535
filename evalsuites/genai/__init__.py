"""SmolLM2-135M-Instruct for the generative scenario: GGUF to ONNX conversion, token datasets, numpy reference."""
