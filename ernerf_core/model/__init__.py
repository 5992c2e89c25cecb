"""ER-NeRF networks: encoders, head and torso fields, occupancy grid, renderer."""
