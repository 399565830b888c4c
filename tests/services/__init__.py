"""Real S3 endpoints (moto server, Ceph RGW) started as child processes for tests."""
