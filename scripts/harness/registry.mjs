// The loopback registry: forgetting a repository between runs.

/**
 * Delete every tag of `repository` from the loopback registry (its config enables deletes), so a
 * demo or benchmark that starts again releases its versions anew: a version tag that a run of
 * another commit pushed is never released again (the action deploys it as sha- instead).
 * @param {string} registry
 * @param {string} repository
 */
export async function forgetRepository(registry, repository) {
  const base = `http://${registry}/v2/${repository}`
  const list = await fetch(`${base}/tags/list`)
  if (!list.ok) return
  const tags = /** @type {{ tags: string[] | null }} */ (await list.json()).tags ?? []
  const accept = [
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.docker.distribution.manifest.list.v2+json'
  ].join(', ')
  for (const tag of tags) {
    const head = await fetch(`${base}/manifests/${tag}`, { method: 'HEAD', headers: { accept } })
    const digest = head.headers.get('docker-content-digest')
    if (digest) await fetch(`${base}/manifests/${digest}`, { method: 'DELETE' })
  }
}
