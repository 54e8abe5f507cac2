<?php

namespace Resonance\Laravel\Events;

/** channel_vacated: the last subscriber left the channel. */
class ChannelVacated extends WebhookEvent
{
}
