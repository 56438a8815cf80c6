"""dots.ocr in llama.cpp (llama-cpp-python): a GGUF language model and its vision projector, split
between the GPU and the CPU as the planner says (core/planner/llamacpp.py)."""
