"""polysemy: study superposition in toy models, real models held fixed, and sparse autoencoders.

Subpackages: `toy` (toy models of superposition), `synth` (planted-dictionary activations),
`models` (load a model and hook named sites), `corpora` (text sources), `activations`
(harvest into a sharded store), `sae` (sparse autoencoders), `analysis` (evidence),
`report` (figures and pages).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
