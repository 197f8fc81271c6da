"""Neural networks of cosmonb: each model lives in its own module (imnn, glow, vdvae, unet, diffusion, flows).

Import the module you need, e.g. ``from cosmonb.models.imnn import IMNN``; models get
tensors and never read files (GUIDE section 1).
"""
