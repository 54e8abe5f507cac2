<?php

namespace Resonance\Laravel\Events;

/** Any event of a verified webhook (also the ones without a class of their own). */
class WebhookReceived extends WebhookEvent
{
    /** @var string e.g. "channel_occupied" */
    public $name;

    protected function fill(array $payload): void
    {
        $this->name = (string) ($payload['name'] ?? '');
    }
}
