<?php

namespace Resonance\Laravel\Events;

/** member_removed: a user left a presence channel (their last connection to it). */
class MemberRemoved extends WebhookEvent
{
    /** @var string */
    public $userId;

    protected function fill(array $payload): void
    {
        $this->userId = (string) ($payload['user_id'] ?? '');
    }
}
