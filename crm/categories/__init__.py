"""The case categories as a three-level tree with stable codes (data/categories.csv),
handling time limits and the working calendar they are counted in."""
