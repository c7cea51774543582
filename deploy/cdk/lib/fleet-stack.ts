// The fleet deployment of this project's Greengrass components, as one CloudFormation stack.
//
// The private bucket the component artifacts are uploaded to, the upload of what `cargo xtask
// dist` built, one Greengrass component version per built recipe (its artifact URIs pointing at
// the bucket), and — when a thing or a thing group is named — a deployment of the chosen
// components at the built versions, with configuration merges and, for a thing group, a staged
// rollout that stops when too many devices fail.

import * as fs from 'fs';
import * as path from 'path';

import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as greengrassv2 from 'aws-cdk-lib/aws-greengrassv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3deploy from 'aws-cdk-lib/aws-s3-deployment';
import { Construct } from 'constructs';
import { parse } from 'yaml';

/** The artifact URI prefix of the recipes as `cargo xtask dist` lays them out (gdk's form). */
export const URI_PLACEHOLDER = 's3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/';

/** A component `cargo xtask dist` built. */
export interface BuiltComponent {
  readonly name: string;
  readonly version: string;
  /** The recipe as built (YAML), artifact URIs still in gdk's placeholder form. */
  readonly recipe: string;
}

/**
 * Every component in a `cargo xtask dist` output: one per recipe in `<dist>/recipes/`, with its
 * artifacts in `<dist>/artifacts/<name>/<version>/`.
 */
export function builtComponents(dist: string): BuiltComponent[] {
  const dir = path.join(dist, 'recipes');
  if (!fs.existsSync(dir)) {
    throw new Error(`${dir} does not exist: run \`cargo xtask dist\` first, or name its output with -c dist=DIR`);
  }
  const components = fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.yaml'))
    .sort()
    .map((file) => {
      const recipe = fs.readFileSync(path.join(dir, file), 'utf8');
      const document = parse(recipe) as { ComponentName?: unknown; ComponentVersion?: unknown };
      const name = document.ComponentName;
      const version = document.ComponentVersion;
      if (typeof name !== 'string' || typeof version !== 'string') {
        throw new Error(`${file}: no ComponentName and ComponentVersion strings`);
      }
      const artifacts = path.join(dist, 'artifacts', name, version);
      if (recipe.includes(URI_PLACEHOLDER) && !fs.existsSync(artifacts)) {
        throw new Error(`${file} names artifacts, but ${artifacts} does not exist`);
      }
      return { name, version, recipe };
    });
  if (components.length === 0) {
    throw new Error(`${dir} holds no recipes: run \`cargo xtask dist\``);
  }
  return components;
}

/** Where a deployment goes: one thing (a device), or a thing group (every member, present and future). */
export type Target = { readonly thing: string } | { readonly thingGroup: string };

/** A thing group's staged rollout and when to stop it. */
export interface Rollout {
  /** Devices started per minute at first. */
  readonly baseRatePerMinute: number;
  /** The rate's factor each time `succeededToIncrease` more devices succeed. */
  readonly incrementFactor: number;
  readonly succeededToIncrease: number;
  /** The most devices started per minute. */
  readonly maximumPerMinute: number;
  /** Cancel the rollout when this share (percent) of devices failed … */
  readonly abortThresholdPercent: number;
  /** … once at least this many have finished. */
  readonly abortMinExecuted: number;
}

/** The rollout unless the context says otherwise. */
export const DEFAULT_ROLLOUT: Rollout = {
  baseRatePerMinute: 5,
  incrementFactor: 2,
  succeededToIncrease: 10,
  maximumPerMinute: 50,
  abortThresholdPercent: 10,
  abortMinExecuted: 10,
};

export interface DeploymentProps {
  readonly target: Target;
  /**
   * The components deployed, by full name or the part after its last dot (`Service`); their
   * versions are the built ones. The same names key `merges` and `memoryKiB`.
   */
  readonly components: readonly string[];
  /** Configuration merged into each named component (name → object). */
  readonly merges?: Readonly<Record<string, unknown>>;
  /**
   * A memory limit per named component (name → kilobytes), enforced on the device (a
   * cgroup on the classic nucleus, `MemoryMax=` on nucleus lite); the service sizes its
   * budgets from it.
   */
  readonly memoryKiB?: Readonly<Record<string, number>>;
  /** For a thing group. */
  readonly rollout?: Rollout;
}

export interface FleetStackProps extends StackProps {
  /** The output folder of `cargo xtask dist` (its `recipes/` and `artifacts/`). */
  readonly dist: string;
  /**
   * Delete the artifacts bucket, and every object in it, with the stack. Off by default: the
   * artifacts of the versions a fleet runs stay where its devices fetch them from.
   */
  readonly destroyArtifacts?: boolean;
  /**
   * The devices' token exchange role (Greengrass' `GreengrassV2TokenExchangeRole` unless the
   * fleet was provisioned with another): granted read access to the artifacts, which devices
   * need to download them. Without it, grant that yourself.
   */
  readonly tokenExchangeRoleName?: string;
  /** A deployment to a thing or thing group; without it the components are only published. */
  readonly deployment?: DeploymentProps;
}

export class FleetStack extends Stack {
  /** Where the component artifacts are uploaded and the devices fetch them from. */
  public readonly artifacts: s3.Bucket;
  /** The component versions created, by component name. */
  public readonly components: Map<string, greengrassv2.CfnComponentVersion> = new Map();

  constructor(scope: Construct, id: string, props: FleetStackProps) {
    super(scope, id, props);
    const destroy = props.destroyArtifacts ?? false;
    // Who fetched or changed which artifact: the artifacts bucket's access log, kept a year.
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      lifecycleRules: [{ expiration: Duration.days(365) }],
      removalPolicy: destroy ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      autoDeleteObjects: destroy,
    });
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'The access-log bucket receives the artifacts bucket\'s log; logging it in turn would only log the log delivery.',
    });
    this.artifacts = new s3.Bucket(this, 'Artifacts', {
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'artifacts/',
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

    // The built artifacts, under <name>/<version>/ as the recipes name them. Earlier versions'
    // artifacts are kept (no pruning): devices rolled back to them still fetch them.
    const upload = new s3deploy.BucketDeployment(this, 'UploadArtifacts', {
      sources: [s3deploy.Source.asset(path.join(props.dist, 'artifacts'))],
      destinationBucket: this.artifacts,
      prune: false,
      retainOnDelete: !destroy,
    });

    this.acknowledgeProviders();

    for (const component of builtComponents(props.dist)) {
      const uri = `s3://${this.artifacts.bucketName}/${component.name}/${component.version}/`;
      const version = new greengrassv2.CfnComponentVersion(
        this,
        `${component.name}@${component.version}`,
        { inlineRecipe: component.recipe.split(URI_PLACEHOLDER).join(uri) },
      );
      // A published version stays when a newer one replaces it in the template: deployments
      // that name it, and rollbacks to it, keep working.
      version.applyRemovalPolicy(RemovalPolicy.RETAIN);
      version.node.addDependency(upload);
      this.components.set(component.name, version);
    }

    if (props.deployment) {
      this.deploy(props.deployment);
    }

    if (props.tokenExchangeRoleName) {
      const role = iam.Role.fromRoleName(this, 'TokenExchangeRole', props.tokenExchangeRoleName);
      this.artifacts.grantRead(role);
      for (const finding of ['Action::s3:GetObject*', 'Action::s3:GetBucket*', 'Action::s3:List*', `Resource::<${this.getLogicalId(this.artifacts.node.defaultChild as s3.CfnBucket)}.Arn>/*`]) {
        Validations.of(role).acknowledge({
          id: `AwsSolutions-IAM5[${finding}]`,
          reason: 'Read-only access for the devices to the objects of the artifacts bucket, which they download by component, version and file name: the grant is scoped to that one bucket.',
        });
      }
    }

    new CfnOutput(this, 'ArtifactsBucket', {
      description: 'The bucket the component artifacts are uploaded to',
      value: this.artifacts.bucketName,
    });
  }

  /**
   * Acknowledges, each with its reason, the findings of AWS Solutions' rules on the Lambda
   * functions aws-cdk-lib itself provides for the upload (and, with `destroyArtifacts`, for
   * emptying the buckets): their code, runtime and permissions are the library's, scoped by it
   * to the artifacts bucket and the CDK assets bucket (the default bootstrap qualifier's).
   */
  private acknowledgeProviders(): void {
    const artifacts = this.getLogicalId(this.artifacts.node.defaultChild as s3.CfnBucket);
    const logs = 'aws-cdk-lib\'s provider functions use AWSLambdaBasicExecutionRole, which only lets them write their own logs.';
    const scoped =
      'aws-cdk-lib\'s upload function copies from the CDK assets bucket into the artifacts bucket: its wildcards are S3 actions and object keys within those two buckets.';
    const findings: Record<string, string> = {
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]': logs,
      'AwsSolutions-IAM5[Action::s3:GetObject*]': scoped,
      'AwsSolutions-IAM5[Action::s3:GetBucket*]': scoped,
      'AwsSolutions-IAM5[Action::s3:List*]': scoped,
      'AwsSolutions-IAM5[Action::s3:DeleteObject*]': scoped,
      'AwsSolutions-IAM5[Action::s3:Abort*]': scoped,
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]': scoped,
      [`AwsSolutions-IAM5[Resource::<${artifacts}.Arn>/*]`]: scoped,
      'AwsSolutions-L1':
        'The runtime of aws-cdk-lib\'s provider functions is chosen by aws-cdk-lib and moves with its version (pinned by the lock file).',
    };
    for (const child of this.node.children) {
      if (child.node.id.startsWith('Custom::CDKBucketDeployment') || child.node.id.startsWith('Custom::S3AutoDeleteObjects')) {
        for (const [id, reason] of Object.entries(findings)) {
          Validations.of(child).acknowledge({ id, reason });
        }
      }
    }
  }

  /** The deployment of the chosen components at their built versions. */
  private deploy(props: DeploymentProps): greengrassv2.CfnDeployment {
    const built = [...this.components.keys()];
    /** A built component's full name from its full name or the part after its last dot. */
    const fullName = (name: string): string => {
      const found = built.find((b) => b === name || b.endsWith(`.${name}`));
      if (!found) {
        throw new Error(`no built component ${name}; built: ${built.join(', ')}`);
      }
      return found;
    };
    const byFullName = <T>(values: Readonly<Record<string, T>> = {}): Map<string, T> =>
      new Map(Object.entries(values).map(([name, value]) => [fullName(name), value]));
    const deployed = props.components.map(fullName);
    const merges = byFullName(props.merges);
    const memoryKiB = byFullName(props.memoryKiB);
    const components: Record<string, greengrassv2.CfnDeployment.ComponentDeploymentSpecificationProperty> = {};
    for (const name of deployed) {
      const version = this.components.get(name)!;
      const merge = merges.get(name);
      const memory = memoryKiB.get(name);
      components[name] = {
        componentVersion: version.attrComponentVersion,
        ...(merge === undefined ? {} : { configurationUpdate: { merge: JSON.stringify(merge) } }),
        ...(memory === undefined ? {} : { runWith: { systemResourceLimits: { memory } } }),
      };
    }
    for (const name of [...merges.keys(), ...memoryKiB.keys()]) {
      if (!deployed.includes(name)) {
        throw new Error(`the context names ${name} (configuration or memory), which is not deployed`);
      }
    }
    const group = 'thingGroup' in props.target;
    const targetArn = this.formatArn(
      'thingGroup' in props.target
        ? { service: 'iot', resource: 'thinggroup', resourceName: props.target.thingGroup }
        : { service: 'iot', resource: 'thing', resourceName: props.target.thing },
    );
    const rollout = props.rollout ?? DEFAULT_ROLLOUT;
    const deployment = new greengrassv2.CfnDeployment(this, 'Deployment', {
      targetArn,
      deploymentName: `Image classification: ${deployed.join(', ')}`,
      components,
      deploymentPolicies: {
        // A device whose update fails goes back to what it ran before.
        failureHandlingPolicy: 'ROLLBACK',
        componentUpdatePolicy: { action: 'NOTIFY_COMPONENTS', timeoutInSeconds: 60 },
        configurationValidationPolicy: { timeoutInSeconds: 60 },
      },
      ...(group
        ? {
            iotJobConfiguration: {
              jobExecutionsRolloutConfig: {
                exponentialRate: {
                  baseRatePerMinute: rollout.baseRatePerMinute,
                  incrementFactor: rollout.incrementFactor,
                  // Passed through as JSON by the L1 construct: CloudFormation's own spelling.
                  rateIncreaseCriteria: { NumberOfSucceededThings: rollout.succeededToIncrease },
                },
                maximumPerMinute: rollout.maximumPerMinute,
              },
              abortConfig: {
                criteriaList: [
                  {
                    failureType: 'FAILED',
                    action: 'CANCEL',
                    thresholdPercentage: rollout.abortThresholdPercent,
                    minNumberOfExecutedThings: rollout.abortMinExecuted,
                  },
                ],
              },
            },
          }
        : {}),
    });
    for (const name of deployed) {
      deployment.node.addDependency(this.components.get(name)!);
    }
    return deployment;
  }
}
