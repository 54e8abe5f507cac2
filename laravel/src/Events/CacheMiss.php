<?php

namespace Resonance\Laravel\Events;

/** cache_miss: a client subscribed to a cache channel that holds no event. */
class CacheMiss extends WebhookEvent
{
}
