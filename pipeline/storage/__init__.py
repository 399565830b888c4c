"""One owner for talking to stores: boto3 clients with their retries, `s3://` URIs, ranged reads
(s3.py), and pyarrow filesystems for local and S3 outputs (fs.py). No records, no stages.

May import: errors.
"""
