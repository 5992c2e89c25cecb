"""Image, landmark and lip-sync metrics."""
