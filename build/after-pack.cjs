// electron-builder afterPack hook: flips Electron's fuses in the packaged binary (security checklist item "Check which
// fuses you can change"). Node-as-a-CLI switches are turned off (the trainer uses utilityProcess, not RunAsNode), the
// app only loads from its asar, and where electron-builder writes asar integrity (macOS, Windows) it is enforced.
const path = require('node:path');

/** The fuse settings for a platform (exported for tests). */
function fuseSettings(platform) {
  const { FuseV1Options, FuseVersion } = require('@electron/fuses');
  return {
    version: FuseVersion.V1,
    resetAdHocDarwinSignature: platform === 'darwin',
    [FuseV1Options.RunAsNode]: false,
    [FuseV1Options.EnableCookieEncryption]: true,
    [FuseV1Options.EnableNodeOptionsEnvironmentVariable]: false,
    [FuseV1Options.EnableNodeCliInspectArguments]: false,
    [FuseV1Options.EnableEmbeddedAsarIntegrityValidation]: platform === 'darwin' || platform === 'win32',
    [FuseV1Options.OnlyLoadAppFromAsar]: true,
    [FuseV1Options.GrantFileProtocolExtraPrivileges]: false,
  };
}

function executable(context) {
  const name = context.packager.appInfo.productFilename;
  switch (context.electronPlatformName) {
    case 'darwin':
      return path.join(context.appOutDir, `${name}.app`, 'Contents', 'MacOS', name);
    case 'win32':
      return path.join(context.appOutDir, `${name}.exe`);
    default:
      return path.join(context.appOutDir, context.packager.executableName ?? name.toLowerCase());
  }
}

module.exports = async function afterPack(context) {
  const { flipFuses } = require('@electron/fuses');
  await flipFuses(executable(context), fuseSettings(context.electronPlatformName));
};
module.exports.fuseSettings = fuseSettings;
