"""Creates a bucket on an S3-compatible endpoint (moto's server in the tests).

Usage: s3_bucket.py ENDPOINT BUCKET
"""
import sys

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="sunfleet",
    aws_secret_access_key="sunfleet-secret",
)
s3.create_bucket(Bucket=bucket)
print(len(s3.list_objects_v2(Bucket=bucket).get("Contents", [])))
