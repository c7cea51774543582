#!/usr/bin/env node
// The CDK app: one FleetStack. Context (`-c key=value`):
//   destroyArtifacts=true  delete the artifacts bucket and its objects with the stack.

import { App } from 'aws-cdk-lib';
import { FleetStack } from '../lib/fleet-stack';

const app = new App();
const flag = (key: string): boolean => {
  const value = app.node.tryGetContext(key);
  return value === true || value === 'true';
};
new FleetStack(app, 'ClassifyFleet', {
  description: 'Image classification components for AWS IoT Greengrass, deployed to a fleet',
  destroyArtifacts: flag('destroyArtifacts'),
});
