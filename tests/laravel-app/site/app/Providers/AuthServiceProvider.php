<?php

namespace App\Providers;

use App\Auth\FixtureUserProvider;
use Illuminate\Foundation\Support\Providers\AuthServiceProvider as ServiceProvider;
use Illuminate\Support\Facades\Auth;

class AuthServiceProvider extends ServiceProvider
{
    protected $policies = [];

    public function boot()
    {
        $this->registerPolicies();
        Auth::provider('fixture', function ($app) {
            return new FixtureUserProvider($app['hash']);
        });
    }
}
