"""ViTCoD golden models: masks and polarization (mask), softmax attention over a mask in
float and in the hardware's integer arithmetic (attention), and the Q/K auto-encoder
(autoencoder). docs/vitcod.md describes the algorithms and the arithmetic."""
