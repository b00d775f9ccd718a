"""Discrete acoustic tokenizers (BEATs random projection, VQ, distilled tokenizers, BPE).

Reserved for the BEATs-iterations work; nothing is implemented here yet.
"""
