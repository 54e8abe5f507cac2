<?php

namespace App\Providers;

use Illuminate\Foundation\Support\Providers\EventServiceProvider as ServiceProvider;

class EventServiceProvider extends ServiceProvider
{
    protected $listen = [
        \Resonance\Laravel\Events\MemberAdded::class => [\App\Listeners\TrackPresence::class],
        \Resonance\Laravel\Events\MemberRemoved::class => [\App\Listeners\TrackPresence::class],
    ];

    public function shouldDiscoverEvents()
    {
        return false;
    }
}
