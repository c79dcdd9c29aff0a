/** The EC2 Query API gateway. */
export { createGateway, type Gateway, type GatewayDeps, type GatewayLog } from './server';
export { StaticAccountDirectory, type AccountDirectory, type AccountCredentials } from './accounts';
export { Ec2Error, type Ec2ErrorCode } from './errors';
