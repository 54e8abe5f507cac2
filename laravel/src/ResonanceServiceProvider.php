<?php

namespace Resonance\Laravel;

use Illuminate\Contracts\Foundation\CachesRoutes;
use Illuminate\Support\Facades\Route;
use Illuminate\Support\ServiceProvider;
use Resonance\Laravel\Console\InstallCommand;
use Resonance\Laravel\Console\MakeSocketCommand;
use Resonance\Laravel\Console\RoutesCommand;
use Resonance\Laravel\Http\SocketController;
use Resonance\Laravel\Http\WebhookController;
use Resonance\Laravel\Support\ApiClient;
use Resonance\Laravel\Support\ResonanceApiException;

class ResonanceServiceProvider extends ServiceProvider
{
    public function register()
    {
        $this->mergeConfigFrom(__DIR__.'/../config/resonance.php', 'resonance');

        $this->app->singleton(SocketManager::class, function ($app) {
            return new SocketManager(function () use ($app) {
                $config = $app['config']->get('resonance');
                $env = ['app_id' => 'RESONANCE_APP_ID', 'key' => 'RESONANCE_APP_KEY', 'secret' => 'RESONANCE_APP_SECRET', 'api_url' => 'RESONANCE_API_URL'];
                foreach ($env as $name => $variable) {
                    if (empty($config[$name])) {
                        throw new ResonanceApiException("resonance.$name is not configured (set $variable in .env)");
                    }
                }

                return new ApiClient($config['api_url'], (string) $config['app_id'], (string) $config['key'], (string) $config['secret'], (float) ($config['api_timeout'] ?? 5));
            });
        });
        $this->app->alias(SocketManager::class, 'resonance.sockets');
    }

    public function boot()
    {
        $this->publishes([__DIR__.'/../config/resonance.php' => config_path('resonance.php')], 'resonance-config');

        if (! ($this->app instanceof CachesRoutes && $this->app->routesAreCached())) {
            $this->registerRoutes();
        }
        $this->loadSocketRoutes();

        if ($this->app->runningInConsole()) {
            $this->commands([InstallCommand::class, MakeSocketCommand::class, RoutesCommand::class]);
        }
    }

    /** The handler endpoint and the webhooks endpoint: both authenticated by signatures, no session. */
    private function registerRoutes(): void
    {
        $config = $this->app['config'];
        if ($path = $config->get('resonance.sockets.path')) {
            Route::post($path, SocketController::class)->name('resonance.socket');
        }
        if ($path = $config->get('resonance.webhooks.path')) {
            Route::post($path, WebhookController::class)->name('resonance.webhooks');
        }
    }

    /** routes/sockets.php: Socket::route(...) entries. */
    private function loadSocketRoutes(): void
    {
        $file = $this->app['config']->get('resonance.sockets.routes');
        if ($file && is_file($file)) {
            require $file;
        }
    }
}
