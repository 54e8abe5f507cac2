<?php

namespace Resonance\Laravel\Events;

/** member_added: a user joined a presence channel (first connection of that user). */
class MemberAdded extends WebhookEvent
{
    /** @var string */
    public $userId;

    protected function fill(array $payload): void
    {
        $this->userId = (string) ($payload['user_id'] ?? '');
    }
}
