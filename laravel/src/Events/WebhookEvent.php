<?php

namespace Resonance\Laravel\Events;

/**
 * Base of the events dispatched for Resonance's (Pusher-format) webhooks. Every event of a
 * webhook is also dispatched as WebhookReceived with its raw fields.
 */
abstract class WebhookEvent
{
    /** @var string the channel the event is about */
    public $channel;
    /** @var int|null the webhook's time_ms (milliseconds since the epoch) */
    public $timeMs;
    /** @var array the event exactly as received */
    public $payload;

    public function __construct(array $payload, ?int $timeMs = null)
    {
        $this->payload = $payload;
        $this->channel = (string) ($payload['channel'] ?? '');
        $this->timeMs = $timeMs;
        $this->fill($payload);
    }

    protected function fill(array $payload): void
    {
    }
}
