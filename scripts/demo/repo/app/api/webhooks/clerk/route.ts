import { verifyWebhook } from '@clerk/nextjs/webhooks'
import type { NextRequest } from 'next/server'

export async function POST(req: NextRequest) {
  const evt = await verifyWebhook(req)
  switch (evt.type) {
    case 'user.created':
      // provision the account
      break
    case 'user.deleted':
      // remove the account
      break
  }
  return new Response('ok')
}
