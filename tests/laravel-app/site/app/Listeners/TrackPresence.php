<?php

namespace App\Listeners;

use Illuminate\Support\Facades\Cache;
use Resonance\Laravel\Events\MemberAdded;
use Resonance\Laravel\Events\MemberRemoved;

/** Marks users online / offline from Resonance's presence webhooks (presence-chat.* channels). */
class TrackPresence
{
    public function handle($event)
    {
        if (strpos($event->channel, 'presence-chat.') !== 0) {
            return;
        }
        if ($event instanceof MemberAdded) {
            Cache::forever('online.'.$event->userId, true);
        } elseif ($event instanceof MemberRemoved) {
            Cache::forever('online.'.$event->userId, false);
        }
    }
}
