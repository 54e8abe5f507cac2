<?php

namespace Resonance\Laravel\Events;

/** channel_occupied: the first subscriber joined the channel. */
class ChannelOccupied extends WebhookEvent
{
}
