"""Rendering of the validation split and of driving audio, and video writing."""
