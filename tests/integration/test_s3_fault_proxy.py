"""benchmarks/s3_fault_proxy.py in front of the stack's moto: boto3's calls pass through it
unchanged, and while it is down every request gets a 503 ServiceUnavailable that Spool's
object store takes for an outage, while moto keeps the objects."""

from __future__ import annotations

import io
import os

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.s3_fault_proxy import S3FaultProxy
from spool.objectstore import transient


@pytest.fixture
def proxy(stack):
    with S3FaultProxy(stack.s3_endpoint) as proxy:
        yield proxy


def client(stack, endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint,
                        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
                        region_name=stack.env["AWS_DEFAULT_REGION"],
                        config=Config(retries={"total_max_attempts": 1}))


def test_requests_pass_through_and_a_down_proxy_answers_503(stack, proxy, s3_prefix):
    s3, bucket = client(stack, proxy.url), stack.s3_bucket
    key = f"{s3_prefix}a"
    s3.put_object(Bucket=bucket, Key=key, Body=b"spooled", Metadata={"n": "1"})
    s3.put_object(Bucket=bucket, Key=f"{s3_prefix}b", Body=io.BytesIO(b"b" * 100_000))
    big = os.urandom(11 * 2**20)  # three parts, the last one short
    s3.upload_fileobj(io.BytesIO(big), bucket, f"{s3_prefix}big",
                      Config=TransferConfig(multipart_threshold=5 * 2**20,
                                            multipart_chunksize=5 * 2**20))
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"spooled"
    assert s3.get_object(Bucket=bucket, Key=f"{s3_prefix}big")["Body"].read() == big
    head = s3.head_object(Bucket=bucket, Key=key)
    assert (head["ContentLength"], head["Metadata"]) == (7, {"n": "1"})
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=s3_prefix)
    assert [o["Key"] for o in listed["Contents"]] == [key, f"{s3_prefix}b", f"{s3_prefix}big"]
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket=bucket, Key=f"{s3_prefix}missing")

    proxy.down = True
    calls = [lambda: s3.get_object(Bucket=bucket, Key=key),
             lambda: s3.put_object(Bucket=bucket, Key=f"{s3_prefix}c", Body=b"c"),
             lambda: s3.put_object(Bucket=bucket, Key=f"{s3_prefix}c",
                                   Body=io.BytesIO(b"c" * 1000)),  # Expect: 100-continue
             lambda: s3.list_objects_v2(Bucket=bucket, Prefix=s3_prefix),
             lambda: s3.delete_object(Bucket=bucket, Key=key)]
    for call in calls:
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert transient(err.value)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key=key)  # a HEAD answer has no body to name its code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert proxy.refused == len(calls) + 1
    direct = client(stack, stack.s3_endpoint)  # moto kept everything
    assert direct.get_object(Bucket=bucket, Key=key)["Body"].read() == b"spooled"
    assert direct.list_objects_v2(Bucket=bucket, Prefix=s3_prefix)["KeyCount"] == 3

    proxy.down = False
    s3.delete_object(Bucket=bucket, Key=key)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=s3_prefix)
    assert [o["Key"] for o in listed["Contents"]] == [f"{s3_prefix}b", f"{s3_prefix}big"]
