"""Training bi-encoders with mined negatives, ANCE-style refresh."""
