"""kaspi-identity: password rules, argon2id hashing and account recovery for portals."""
