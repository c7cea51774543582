#!/usr/bin/env node
// The CDK app: one FleetStack, from the output of `cargo xtask dist`. Context (`-c key=value`):
//   dist=DIR                  the dist output (default: the workspace's greengrass-build/)
//   destroyArtifacts=true     delete the artifacts bucket and its objects with the stack
//   tokenExchangeRole=NAME    grant the devices' token exchange role read access to artifacts
//   thing=NAME | thingGroup=NAME
//                             deploy to that thing or thing group (without: publish only)
//   components=A,B            the components deployed, full names or the part after the last
//                             dot (default: Service,IpcAdapter; their versions: the built ones)
//   configuration=FILE        JSON {component: object to merge into its configuration}
//   memoryLimit=A:KIB,B:KIB   a memory limit per deployed component, in kilobytes
//   rolloutBaseRate, rolloutIncrementFactor, rolloutMaxPerMinute, abortThresholdPercent,
//   abortMinExecuted          a thing group's staged rollout (defaults: DEFAULT_ROLLOUT)

import * as fs from 'fs';
import * as path from 'path';

import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { DEFAULT_ROLLOUT, DeploymentProps, FleetStack, Rollout, Target } from '../lib/fleet-stack';

const app = new App();
// AWS Solutions' best-practice rules, checked on every synth: a finding is an error unless the
// stack suppresses it with a written reason.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
const text = (key: string): string | undefined => {
  const value = app.node.tryGetContext(key);
  return value === undefined || value === '' ? undefined : String(value);
};
const number = (key: string, fallback: number): number => {
  const value = text(key);
  if (value === undefined) {
    return fallback;
  }
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0) {
    throw new Error(`-c ${key}=${value}: a positive number is needed`);
  }
  return parsed;
};

const dist = path.resolve(text('dist') ?? path.join(__dirname, '..', '..', '..', 'greengrass-build'));
const deployment = (): DeploymentProps | undefined => {
  const thing = text('thing');
  const thingGroup = text('thingGroup');
  if (thing && thingGroup) {
    throw new Error('name a thing or a thing group, not both');
  }
  if (!thing && !thingGroup) {
    return undefined;
  }
  const target: Target = thingGroup ? { thingGroup } : { thing: thing! };
  const components = (text('components') ?? 'Service,IpcAdapter').split(',').map((n) => n.trim());
  const file = text('configuration');
  const merges: Record<string, unknown> = {};
  if (file) {
    const document = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    for (const [name, merge] of Object.entries(document)) {
      merges[name] = merge;
    }
  }
  const memoryKiB: Record<string, number> = {};
  for (const pair of (text('memoryLimit') ?? '').split(',').filter((p) => p.trim() !== '')) {
    const [name, kib] = pair.split(':');
    const value = Number(kib);
    if (!name || !Number.isInteger(value) || value <= 0) {
      throw new Error(`-c memoryLimit: "${pair}" is not COMPONENT:KILOBYTES (a whole number)`);
    }
    memoryKiB[name.trim()] = value;
  }
  const rollout: Rollout = {
    baseRatePerMinute: number('rolloutBaseRate', DEFAULT_ROLLOUT.baseRatePerMinute),
    incrementFactor: number('rolloutIncrementFactor', DEFAULT_ROLLOUT.incrementFactor),
    succeededToIncrease: DEFAULT_ROLLOUT.succeededToIncrease,
    maximumPerMinute: number('rolloutMaxPerMinute', DEFAULT_ROLLOUT.maximumPerMinute),
    abortThresholdPercent: number('abortThresholdPercent', DEFAULT_ROLLOUT.abortThresholdPercent),
    abortMinExecuted: number('abortMinExecuted', DEFAULT_ROLLOUT.abortMinExecuted),
  };
  return { target, components, merges, memoryKiB, rollout };
};

new FleetStack(app, 'ClassifyFleet', {
  description: 'Image classification components for AWS IoT Greengrass, deployed to a fleet',
  dist,
  destroyArtifacts: text('destroyArtifacts') === 'true',
  tokenExchangeRoleName: text('tokenExchangeRole'),
  deployment: deployment(),
});
