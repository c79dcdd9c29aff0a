/** The operator's guest policy (IMAGING_GUEST_* settings) as the inspector takes it. */
import type { Settings } from '../../config/settings-schema';
import type { GuestPolicy } from '../../toolkit/inspect/guest';

export function guestPolicyOf(settings: Pick<Settings, 'guestAllowedOs' | 'guestRequireBootloader' | 'guestRefuseEncrypted' | 'guestRefuseMultiBoot'>): GuestPolicy {
  return {
    allowedFamilies: [...settings.guestAllowedOs],
    requireBootloader: settings.guestRequireBootloader,
    refuseEncrypted: settings.guestRefuseEncrypted,
    refuseMultiBoot: settings.guestRefuseMultiBoot,
  };
}
