"""Audio signal code: file I/O, feature frontends, augmentation, corruptions. Knows nothing about models."""
