// The one error a configuration mistake raises: main prints its message and exits 2.
export class ConfigError extends Error {
  override name = 'ConfigError';
}
