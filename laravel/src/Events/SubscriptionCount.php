<?php

namespace Resonance\Laravel\Events;

/** subscription_count: the number of subscriptions of the channel changed. */
class SubscriptionCount extends WebhookEvent
{
    /** @var int */
    public $subscriptionCount;

    protected function fill(array $payload): void
    {
        $this->subscriptionCount = (int) ($payload['subscription_count'] ?? 0);
    }
}
