#!/usr/bin/env python3
"""Creates what an admin would set up for metaflow's AWS Batch in a
moto_server: an IAM role, an unmanaged compute environment, an ENABLED job
queue and an S3 bucket; and QUEUE-small, a queue whose one managed compute
environment has at most 4 vCPUs of m5.large (2 vCPUs, 8 GiB) instances. Used by tests/e2e/testthat/test-batch.R.

Usage: moto-setup.py ENDPOINT QUEUE BUCKET   (exit 3: boto3 is missing)
"""
import sys

try:
    import boto3
except ImportError:
    sys.exit(3)

endpoint, queue, bucket = sys.argv[1:4]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
iam = boto3.client("iam", **kw)
role = iam.create_role(RoleName="metaflow-batch-service",
                       AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')["Role"]["Arn"]
b = boto3.client("batch", **kw)
ce = b.create_compute_environment(computeEnvironmentName="metaflow-ce", type="UNMANAGED",
                                  serviceRole=role, state="ENABLED")["computeEnvironmentArn"]
b.create_job_queue(jobQueueName=queue, state="ENABLED", priority=1,
                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}])
boto3.client("s3", **kw).create_bucket(Bucket=bucket)

# A small managed compute environment in moto's default VPC (never used to
# run jobs: the tests only ask whether a request could ever fit).
ec2 = boto3.client("ec2", **kw)
subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
sg = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
iam.create_instance_profile(InstanceProfileName="metaflow-small-instance")
small = b.create_compute_environment(
    computeEnvironmentName="metaflow-small-ce", type="MANAGED", serviceRole=role, state="ENABLED",
    computeResources={"type": "EC2", "minvCpus": 0, "desiredvCpus": 0, "maxvCpus": 4,
                      "instanceTypes": ["m5.large"], "instanceRole": "metaflow-small-instance",
                      "subnets": [subnet], "securityGroupIds": [sg]})["computeEnvironmentArn"]
b.create_job_queue(jobQueueName=queue + "-small", state="ENABLED", priority=1,
                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": small}])
