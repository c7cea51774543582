// The fleet deployment of this project's Greengrass components, as one CloudFormation stack.
//
// Built step by step (see issue "Fleet deployment as code"): so far, the private bucket the
// component artifacts are uploaded to.

import { CfnOutput, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface FleetStackProps extends StackProps {
  /**
   * Delete the artifacts bucket, and every object in it, with the stack. Off by default: the
   * artifacts of the versions a fleet runs stay where its devices fetch them from.
   */
  readonly destroyArtifacts?: boolean;
}

export class FleetStack extends Stack {
  /** Where the component artifacts are uploaded and the devices fetch them from. */
  public readonly artifacts: s3.Bucket;

  constructor(scope: Construct, id: string, props: FleetStackProps = {}) {
    super(scope, id, props);
    const destroy = props.destroyArtifacts ?? false;
    this.artifacts = new s3.Bucket(this, 'Artifacts', {
      // Private: no public ACLs or policies, objects owned by the account, TLS only.
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      // An artifact overwritten by mistake can be restored for a rollback.
      versioned: true,
      removalPolicy: destroy ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      autoDeleteObjects: destroy,
    });
    new CfnOutput(this, 'ArtifactsBucket', {
      description: 'The bucket the component artifacts are uploaded to',
      value: this.artifacts.bucketName,
    });
  }
}
