"""Face detection (MTCNN), face selection and alignment to an encoder's template."""
