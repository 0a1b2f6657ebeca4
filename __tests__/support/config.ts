// The smallest valid inputs for unit tests that need a Config, with `extra` on top.
import { parseConfig, type Config, type Inputs } from '../../src/config.js'

export function testConfig(extra: Inputs = {}): Config {
  return parseConfig(
    {
      image: 'ghcr.io/acme/shop',
      host: 'h',
      username: 'u',
      'ssh-key': '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----',
      'insecure-ignore-host-key': 'true',
      ...extra
    },
    { repository: 'acme/shop', workspace: '/ws' }
  )
}
